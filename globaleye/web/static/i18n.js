// The portal's words in Chinese (zh-CN, the default) and English.
// The language is the first of navigator.languages we have (zh* -> zh-CN, en* -> en), else zh-CN;
// a choice made with the switch is kept in localStorage ("ge.lang").

export const LANGS = ['zh-CN', 'en'];
const KEY = 'ge.lang';

const WORDS = {
  'zh-CN': {
    appName: '手机看店',
    loading: '加载中…',
    switchTo: 'English',
    logout: '退出',
    login: '登录',
    loginTitle: '登录',
    account: '手机号码',
    password: '密码',
    noAccount: '还没有账号？注册',
    haveAccount: '已有账号？登录',
    signup: '注册',
    signupTitle: '注册新账号',
    smsCode: '短信验证码',
    sendCode: '获取验证码',
    codeSent: '验证码已发送',
    newPassword: '新密码',
    oldPassword: '原密码',
    changePassword: '修改密码',
    passwordChanged: '密码已修改，请重新登录',
    devices: '我的摄像头',
    noDevices: '还没有摄像头。请在下方输入设备编号和密钥添加。',
    online: '在线',
    offline: '离线',
    shared: '他人分享',
    addDevice: '添加摄像头',
    devId: '设备编号 (DevID)',
    devKey: '设备密钥 (DevKey)',
    add: '添加',
    added: '已添加',
    remove: '删除摄像头',
    removed: '已删除',
    back: '返回列表',
    mainStream: '主码流',
    subStream: '子码流',
    stream: '码流',
    ptz: '云台控制',
    up: '向上',
    down: '向下',
    left: '向左',
    right: '向右',
    stop: '停止',
    noPtz: '此摄像头不支持云台',
    noStream: '此摄像头没有这个码流',
    cameraOffline: '摄像头离线',
    connecting: '正在连接…',
    playing: '正在播放',
    noPath: '找不到路径',
    liveUnavailable: '实时视频暂不可用',
    playerMissing: '此版本没有实时视频播放器',
    sessionExpired: '会话已过期，请重新登录',
    loginFailed: '手机号码或密码错误',
    locked: '尝试次数过多，请稍后再试',
    alarms: '告警记录',
    noAlarms: '没有告警',
    notFound: '找不到这个摄像头',
    error: '出错了',
    closeAccount: '注销账号',
    confirmClose: '确定注销账号吗？您的摄像头将被释放。',
    accountClosed: '账号已注销',
    sharing: '分享',
    shareWith: '分享给 (手机号码)',
    share: '分享',
    unshare: '取消分享',
    notShared: '尚未分享给任何人',
    sharedDone: '已分享',
    noSuchAccount: '没有这个账号',
    // --- grid ---
    grid: '多画面',
    gridLayout: '画面布局',
    layout1: '单画面',
    layout4: '四画面',
    layout9: '九画面',
    prevPage: '上一页',
    nextPage: '下一页',
    tileOffline: '摄像头离线',
    openCamera: '打开摄像头页面',
    viewControls: '播放控制',
    mute: '静音',
    unmute: '打开声音',
    fullscreen: '全屏',
    exitFullscreen: '退出全屏',
    fullscreenRefused: '浏览器不允许全屏',
    snapshot: '抓拍',
    noPicture: '还没有画面',
    record: '本地录像',
    stopRecording: '停止录像',
    recordFailed: '录像失败：没有收到视频',
    recordLimit: '录像已达上限（10 分钟或 200 MB），已保存',
  },
  en: {
    appName: 'GlobalEye',
    loading: 'Loading…',
    switchTo: '中文',
    logout: 'Log out',
    login: 'Log in',
    loginTitle: 'Log in',
    account: 'Mobile number',
    password: 'Password',
    noAccount: 'No account yet? Sign up',
    haveAccount: 'Have an account? Log in',
    signup: 'Sign up',
    signupTitle: 'Create an account',
    smsCode: 'SMS code',
    sendCode: 'Send code',
    codeSent: 'Code sent',
    newPassword: 'New password',
    oldPassword: 'Current password',
    changePassword: 'Change password',
    passwordChanged: 'Password changed, please log in again',
    devices: 'My cameras',
    noDevices: 'No camera yet. Add one below with its DevID and DevKey.',
    online: 'Online',
    offline: 'Offline',
    shared: 'Shared with you',
    addDevice: 'Add a camera',
    devId: 'Device ID (DevID)',
    devKey: 'Device key (DevKey)',
    add: 'Add',
    added: 'Added',
    remove: 'Remove camera',
    removed: 'Removed',
    back: 'Back to the list',
    mainStream: 'Main stream',
    subStream: 'Sub stream',
    stream: 'Stream',
    ptz: 'Pan and tilt',
    up: 'Up',
    down: 'Down',
    left: 'Left',
    right: 'Right',
    stop: 'Stop',
    noPtz: 'This camera cannot pan or tilt',
    noStream: 'This camera has no such stream',
    cameraOffline: 'Camera offline',
    connecting: 'Connecting…',
    playing: 'Playing',
    noPath: 'No path to the camera',
    liveUnavailable: 'Live video is not available',
    playerMissing: 'This version has no live video player',
    sessionExpired: 'Session expired, please log in again',
    loginFailed: 'Wrong mobile number or password',
    locked: 'Too many attempts, try again later',
    alarms: 'Alarms',
    noAlarms: 'No alarms',
    notFound: 'No such camera',
    error: 'Something went wrong',
    closeAccount: 'Close account',
    confirmClose: 'Close your account? Your cameras will be released.',
    accountClosed: 'Account closed',
    sharing: 'Sharing',
    shareWith: 'Share with (mobile number)',
    share: 'Share',
    unshare: 'Stop sharing',
    notShared: 'Not shared with anyone',
    sharedDone: 'Shared',
    noSuchAccount: 'No such account',
    // --- grid ---
    grid: 'Multi-view',
    gridLayout: 'Layout',
    layout1: 'One camera',
    layout4: 'Four cameras',
    layout9: 'Nine cameras',
    prevPage: 'Previous page',
    nextPage: 'Next page',
    tileOffline: 'Camera offline',
    openCamera: 'open the camera\'s page',
    viewControls: 'Player controls',
    mute: 'Mute',
    unmute: 'Unmute',
    fullscreen: 'Fullscreen',
    exitFullscreen: 'Exit fullscreen',
    fullscreenRefused: 'The browser does not allow fullscreen',
    snapshot: 'Snapshot',
    noPicture: 'No picture yet',
    record: 'Record',
    stopRecording: 'Stop recording',
    recordFailed: 'Recording failed: no video came',
    recordLimit: 'Recording reached its limit (10 minutes or 200 MB) and was saved',
  },
};

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** The language of the browser's list we have, else zh-CN. */
export function browserLanguage(languages = navigator.languages || [navigator.language || '']) {
  for (const tag of languages) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'zh-CN';
}

let current = LANGS.includes(stored()) ? stored() : browserLanguage();

export function lang() {
  return current;
}

export function setLang(tag) {
  if (!LANGS.includes(tag)) return;
  current = tag;
  try {
    localStorage.setItem(KEY, tag);
  } catch {
    // private mode: the choice lasts for this page only
  }
}

/** The word for key in the current language (the key itself when missing, so a gap shows). */
export function t(key) {
  return WORDS[current][key] ?? WORDS['zh-CN'][key] ?? key;
}

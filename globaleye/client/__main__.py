from globaleye.client.cli import main

main()

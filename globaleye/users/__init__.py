"""Users (§2, §8.1-§8.4): accounts, passwords, SMS codes and HashTokens, the CRM check, the SMS gateway."""

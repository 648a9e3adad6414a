"""Repository environments: what prepares a user's runs of one repository (docs/ARCHITECTURE.md, "Environments")."""

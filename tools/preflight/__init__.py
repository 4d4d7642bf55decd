"""Read-only checks of one AWS account before its first deploy, derived from the config and the templates."""

"""Task-independent helpers shared by the bundles (demo-data cache location, ...); import the module you need."""

"""The vendor emulator (being built: see emulator/kit.py for the interface vendor routes use)."""

// The SDScript module. See README.md for the layout.

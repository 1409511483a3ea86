// The ModelStore module. See README.md for the layout.

// The Imaging module. See README.md for the layout.

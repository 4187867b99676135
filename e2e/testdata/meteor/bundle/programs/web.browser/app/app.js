// Replaced by the app's client/main.js at build time.

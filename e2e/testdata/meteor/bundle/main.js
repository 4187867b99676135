// The entry point of a Meteor server bundle: start the server program
// from its own folder, as a real bundle's main.js does.
const path = require('path');
process.chdir(path.join(__dirname, 'programs', 'server'));
require('./programs/server/boot.js');

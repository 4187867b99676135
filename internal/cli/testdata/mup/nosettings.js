// A configuration whose settings file (given with --settings) does not exist.
module.exports = {
  servers: { one: { host: '192.0.2.8', username: 'root' } },
  app: { name: 'nosettings', path: '../', servers: { one: {} } },
};

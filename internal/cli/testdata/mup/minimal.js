// The smallest useful Meteor Up configuration: one server, the app, its env.
module.exports = {
  servers: {
    web1: { host: '203.0.113.10', username: 'deploy', pem: '~/.ssh/deploy_ed25519' },
  },
  app: {
    name: 'Chat',
    path: '../',
    servers: { web1: {} },
    buildOptions: { serverOnly: true },
    env: {
      ROOT_URL: 'https://chat.example.org',
      MONGO_URL: 'mongodb://db.internal:27017/chat',
    },
  },
};

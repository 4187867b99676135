// The Meteor Up configuration of the fixture app.
module.exports = {
  servers: {
    one: { host: '192.0.2.21', username: 'root', pem: '~/.ssh/id_ed25519' },
  },
  app: {
    name: 'shop',
    path: '../',
    servers: { one: {} },
    buildOptions: { serverOnly: true },
    docker: { image: 'zodern/meteor:root' },
    env: {
      ROOT_URL: 'https://shop.example.test',
      MONGO_URL: 'mongodb://shop:mongo-pw@127.0.0.1:27017/shop',
      FEATURE: 'on',
    },
    deployCheckWaitTime: 30,
  },
  proxy: { domains: 'shop.example.test' },
};

// A mup.js that fails while it is evaluated.
const missing = undefined;
module.exports = {
  servers: {},
  app: { name: missing.name },
};

// A Docker-minded configuration: image, port, run args and build lines.
module.exports = {
  servers: { one: { host: '192.0.2.7', username: 'root' } },
  app: {
    name: 'reports',
    path: '..',
    servers: { one: {} },
    docker: {
      image: 'node:20-bookworm-slim',
      imagePort: 8080,
      args: ['--memory=512m', '--cpus', '1.5', '-e', 'LOG_LEVEL=debug', '--env=API_KEY=k-123', '--restart always', '--add-host=db:10.0.0.5'],
      buildInstructions: ['RUN apt-get update && apt-get install -y fontconfig', 'USER node'],
    },
    env: { ROOT_URL: 'http://reports.example.com' },
  },
};

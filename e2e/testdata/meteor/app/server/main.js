// The server of the fixture app (the stand-in build uses the bundle's own boot.js).

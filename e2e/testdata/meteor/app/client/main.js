// The client of the fixture app.
console.log('shop client');

package migrations

// Load exposes load to the tests, which feed it misnamed files.
var Load = load

package sqlite

// Dialect is the SQLite dialect, for tests that trace its statements.
var Dialect = dialect

package migrations

// ApplyFS and NewProvider expose apply and newProvider to the tests, which
// feed them files of their own.
var (
	ApplyFS     = apply
	NewProvider = newProvider
	Files       = files
)

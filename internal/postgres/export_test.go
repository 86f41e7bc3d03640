package postgres

// ChannelSQL names the schema's news channel, for the tests that look the
// listener up in pg_stat_activity.
const ChannelSQL = channelSQL

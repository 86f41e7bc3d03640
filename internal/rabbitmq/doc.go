// Package rabbitmq is kvstack's RabbitMQ adapter: it declares the queues and
// their dead-letter topology, publishes accepted operations with publisher
// confirms (a nil error means the broker has the message), and is the
// consumer's Source: sessions that deliver both queues and settle what the
// consumer decided. Both sides reconnect after a broker restart (the
// publisher by itself, the source when the consumer opens a new session);
// failures reach callers as errors wrapping kv.ErrUnavailable.
package rabbitmq

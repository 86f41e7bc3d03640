// Package rabbitmq is kvstack's RabbitMQ adapter: it declares the queues and
// their dead-letter topology, publishes accepted operations with publisher
// confirms (a nil error means the broker has the message), and runs the
// consumer loop that feeds batches of deliveries to a consumer.Handler and
// acts on its verdicts. Both sides reconnect by themselves after a broker
// restart; failures reach callers as errors wrapping kv.ErrUnavailable.
package rabbitmq

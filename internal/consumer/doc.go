// Package consumer owns a queued operation's life in the consumer, from
// delivery to ack: it takes deliveries from a Source, batches them, starts
// each message's CONSUMER span, applies the newest operation per key to the
// store in one transaction (last writer wins), brings the cache in line,
// retries a batch while a dependency is down, isolates what can never be
// applied, and settles every message (ack, or dead-letter) before it ends
// its span. It knows nothing of AMQP: the rabbitmq package is the Source.
package consumer

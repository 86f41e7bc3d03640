package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterQueueBound exports the bound of the work queues in messages
// (RABBITMQ_QUEUE_MAX_LENGTH), which RabbitMQ's metrics do not give, so
// that an alert can compare a queue's depth with it. No bound (0), no
// series.
func RegisterQueueBound(reg prometheus.Registerer, maxLength int, queues ...string) {
	if maxLength <= 0 {
		return
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kvstack_queue_max_messages",
		Help: "The bound of a work queue in messages (x-max-length): past it, RabbitMQ refuses publishes, and writes get 503.",
	}, []string{"queue"})
	for _, q := range queues {
		g.WithLabelValues(q).Set(float64(maxLength))
	}
	reg.MustRegister(g)
}

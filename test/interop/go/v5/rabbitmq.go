package main

import (
	"go-micro.dev/v5/broker"
	"go-micro.dev/v5/broker/rabbitmq"
)

// durableQueue declares a queue group's queue durable (go-micro's rabbitmq broker option).
func durableQueue() broker.SubscribeOption { return rabbitmq.DurableQueue() }

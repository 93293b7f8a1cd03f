// The print_event action: logs the matched event.

package dispatch

import "go.uber.org/zap"

func printEventAction(_ *tracker, f Fired, log *zap.Logger) {
	log.Info("print_event", zap.Any("event", f.Matched()))
}

// The shutdown action: asks the receiver to stop once the entry that fired
// it is recorded as done (Config.Shutdown).

package dispatch

import "go.uber.org/zap"

func shutdownAction(t *tracker, f Fired, log *zap.Logger) {
	msg, _ := f.Args["message"].(string)
	if msg == "" {
		msg = "shutdown action in rule " + f.Rule
	}
	log.Info("shutdown requested by a rule", zap.String("message", msg))
	t.mu.Lock()
	t.shutdown = msg
	t.mu.Unlock()
}

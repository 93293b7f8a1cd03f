// The debug action: logs msg, or var, or the arguments, with the matched
// event.

package dispatch

import "go.uber.org/zap"

func debugAction(_ *tracker, f Fired, log *zap.Logger) {
	if msg, ok := f.Args["msg"]; ok {
		log.Info("debug", zap.Any("msg", msg))
	} else if v, ok := f.Args["var"]; ok {
		log.Info("debug", zap.Any("var", v), zap.Any("event", f.Matched()))
	} else {
		log.Info("debug", zap.Any("args", f.Args), zap.Any("event", f.Matched()))
	}
}

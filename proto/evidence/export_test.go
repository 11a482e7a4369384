package evidence

import "reflect"

// WithContract registers c's payload type T under collector for the
// duration of a test, with upgrade converting the payloads of older
// versions.
func WithContract[T any](collector string, current int, upgrade map[int]func([]byte) (any, error)) (restore func()) {
	old, had := contracts[collector]
	contracts[collector] = contract{current: current, payload: reflect.TypeFor[T](), upgrade: upgrade}
	return func() {
		if had {
			contracts[collector] = old
		} else {
			delete(contracts, collector)
		}
	}
}

// PayloadType is the payload type registered for collector.
func PayloadType(collector string) reflect.Type { return contracts[collector].payload }

package harness

import (
	"fmt"
	"os"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// EngineVar chooses the engine the e2e and chaos suites create their
// formations with: redis (the default) or valkey.
const EngineVar = "RSF_ENGINE"

// Engine is the engine EngineVar names.
func Engine() (engine.Engine, error) {
	e, err := engine.Of(engine.Name(os.Getenv(EngineVar)))
	if err != nil {
		return engine.Engine{}, fmt.Errorf("%s: %w", EngineVar, err)
	}
	return e, nil
}

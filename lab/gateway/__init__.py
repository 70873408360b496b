"""The class gateway: real provider calls through costlab's own pipeline, one key for the class, a cap per learner.

`costlab gateway serve --config gateway.toml` speaks OpenAI chat completions and the Responses
API (`/openai/v1`), Anthropic messages (`/anthropic`) and Gemini generateContent (`/google`),
streaming included, so a learner's official SDK works unchanged with its base URL pointed
here and their gateway token as its key. The class's keys stay in this process.

- `config`: the TOML file (upstreams, limits, the `[[pipeline]]` of live stages)
- `store`: learners (token hashes), spend (reserve / settle / release) and the ledger, SQLite or PostgreSQL
- `recorder`: every ledger row copied into the experiment store's recorded run
- `wire`: the three formats (keys, worst cases, error shapes, streamed usage)
- `stages`: the live halves of cache, dedup and rate limit
- `app`: the ASGI app; `server`: running it; `metrics`: Prometheus
"""

from lab.gateway.app import Gateway
from lab.gateway.config import GatewayConfig, config_from_dict, load_config
from lab.gateway.server import BackgroundGateway, running, serve
from lab.gateway.store import GatewayStore

__all__ = ["BackgroundGateway", "Gateway", "GatewayConfig", "GatewayStore", "config_from_dict", "load_config", "running", "serve"]

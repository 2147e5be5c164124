.PHONY: demo test lint format bench migrate

demo:  ## Start web, worker, beat and the Trackstar sandbox on embedded defaults
	scripts/demo.sh

test:  ## Run the whole suite on PostgreSQL + Redis (throwaway servers unless DATABASE_URL/REDIS_URL are set)
	scripts/test.sh

lint:
	scripts/bootstrap.sh requirements-dev.txt
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

format:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench:
	scripts/bootstrap.sh requirements-dev.txt
	.venv/bin/python -m bench $(if $(SECTIONS),--sections $(SECTIONS))

"""Derive the test configurations from the docker-compose ones.

The tests must run what `docker compose up` runs, so they start from
deploy/synapse/homeserver.yaml and deploy/mls-appservice/config.yaml and
change only what differs outside containers: paths, addresses and ports.

usage: render-config.py synapse SRC DST DATA_DIR PORT REGISTRATION
       render-config.py appservice SRC DST SYNAPSE_PORT AS_PORT DATABASE_URI
"""
import sys

import yaml


def synapse(src, dst, data, port, registration):
    cfg = yaml.safe_load(open(src))
    cfg["pid_file"] = f"{data}/homeserver.pid"
    cfg["signing_key_path"] = f"{data}/localhost.signing.key"
    cfg["media_store_path"] = f"{data}/media_store"
    # The compose stack's Synapse uses PostgreSQL; the test one SQLite, which
    # restarts its appservice transaction ids after a restart (DESIGN 7).
    cfg["database"] = {"name": "sqlite3", "args": {"database": f"{data}/homeserver.db"}}
    cfg["listeners"][0]["port"] = int(port)
    cfg["listeners"][0]["bind_addresses"] = ["127.0.0.1"]
    cfg["app_service_config_files"] = [registration]
    yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)


def appservice(src, dst, synapse_port, as_port, database_uri):
    cfg = yaml.safe_load(open(src))
    cfg["homeserver"]["address"] = f"http://127.0.0.1:{synapse_port}"
    cfg["appservice"]["address"] = f"http://127.0.0.1:{as_port}"
    cfg["appservice"]["hostname"] = "127.0.0.1"
    cfg["appservice"]["port"] = int(as_port)
    cfg["database"]["uri"] = database_uri
    cfg["logging"]["format"] = "json"
    yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)


if __name__ == "__main__":
    {"synapse": synapse, "appservice": appservice}[sys.argv[1]](*sys.argv[2:])

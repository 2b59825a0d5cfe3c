#!/usr/bin/env python3
"""Structural checks of the deploy manifests (there is no cluster or Docker engine in CI)."""
import sys
import yaml

problems = []
docs = {}
for path in ["deploy/k8s/deployment.yaml", "deploy/k8s/cronjob.yaml", "deploy/k8s/secrets.example.yaml", "deploy/k8s/service.yaml", "deploy/k8s/console-service.yaml", "deploy/docker-compose.yml"]:
    with open(path) as f:
        docs[path] = list(yaml.safe_load_all(f))

dep = docs["deploy/k8s/deployment.yaml"][0]
c = dep["spec"]["template"]["spec"]["containers"][0]
if c["livenessProbe"]["httpGet"]["path"] != "/healthz":
    problems.append("Deployment liveness probe is not /healthz")
if c["readinessProbe"]["httpGet"]["path"] != "/readyz":
    problems.append("Deployment readiness probe is not /readyz")
if c["args"] != ["serve"]:
    problems.append("Deployment does not run serve")
if not dep["spec"]["template"]["spec"]["securityContext"].get("runAsNonRoot"):
    problems.append("Deployment may run as root")

# The API: its port named, its address set to that port, and the Service pointing at it (by name)
# and at the Deployment's pods; never the health port.
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
env = {e["name"]: e.get("value") for e in c["env"]}
if "api" not in ports or env.get("PLAN_INVOICER_API_ADDR") != f"0.0.0.0:{ports.get('api')}":
    problems.append("Deployment: PLAN_INVOICER_API_ADDR must listen on the container port named api")
svc = docs["deploy/k8s/service.yaml"][0]
if svc["spec"]["selector"] != dep["spec"]["template"]["metadata"]["labels"]:
    problems.append("Service selector does not match the Deployment's pods")
if [p["targetPort"] for p in svc["spec"]["ports"]] != ["api"]:
    problems.append("Service must expose the api port only")

# The console: its own port and Service, never the API's or the health port.
if "console" not in ports or env.get("PLAN_INVOICER_CONSOLE_ADDR") != f"0.0.0.0:{ports.get('console')}":
    problems.append("Deployment: PLAN_INVOICER_CONSOLE_ADDR must listen on the container port named console")
console_svc = docs["deploy/k8s/console-service.yaml"][0]
if console_svc["spec"]["selector"] != dep["spec"]["template"]["metadata"]["labels"]:
    problems.append("console Service selector does not match the Deployment's pods")
if [p["targetPort"] for p in console_svc["spec"]["ports"]] != ["console"]:
    problems.append("console Service must expose the console port only")

cron = docs["deploy/k8s/cronjob.yaml"][0]
job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
if job["args"][0] != "run-once" or cron["spec"].get("concurrencyPolicy") != "Forbid":
    problems.append("CronJob must run run-once with concurrencyPolicy Forbid")

compose = docs["deploy/docker-compose.yml"][0]
if set(compose["services"]) != {"db", "migrate", "worker"}:
    problems.append("compose needs db, migrate and worker")
if compose["services"]["worker"]["depends_on"]["migrate"]["condition"] != "service_completed_successfully":
    problems.append("the worker must wait for migrate")
api_addr = compose["services"]["worker"]["environment"].get("PLAN_INVOICER_API_ADDR", "")
if not any(p.endswith(":" + api_addr.rsplit(":", 1)[-1]) for p in compose["services"]["worker"]["ports"]):
    problems.append("compose must publish the API's port")

with open("deploy/Dockerfile") as f:
    dockerfile = f.read()
if dockerfile.count("FROM ") < 2 or "USER 10001" not in dockerfile:
    problems.append("Dockerfile must be multi-stage and run as non-root")

for p in problems:
    print(f"deploy: {p}", file=sys.stderr)
print("deploy manifests: " + ("FAILED" if problems else "ok"))
sys.exit(1 if problems else 0)

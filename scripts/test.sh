#!/usr/bin/env bash
# Runs every test with the race detector, in shuffled order. This is the
# README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -race -shuffle=on -count=1 -timeout 60m ./...

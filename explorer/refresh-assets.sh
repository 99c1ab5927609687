#!/usr/bin/env bash
# Refreshes explorer/static/ from the npm registry: GraphiQL's browser build and the React
# it runs on, at the versions pinned below, with their licenses. `make explorer-assets`.
# Change a version here, run it, open the page (tests/test_explorer_browser.py), commit.
set -euo pipefail
GRAPHIQL=3.8.3
REACT=18.2.0
here="$(cd "$(dirname "$0")" && pwd)"
static="$here/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null
for archive in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
    package="${archive%-*}"
    mkdir "$package"
    tar -xzf "$archive.tgz" -C "$package" --strip-components=1
done
cp graphiql/graphiql.min.js graphiql/graphiql.min.css "$static/"
cp graphiql/LICENSE "$static/LICENSE.graphiql"
cp react/umd/react.production.min.js "$static/"
cp react/LICENSE "$static/LICENSE.react"
cp react-dom/umd/react-dom.production.min.js "$static/"
cp react-dom/LICENSE "$static/LICENSE.react-dom"
printf 'graphiql %s\nreact %s\nreact-dom %s\n' "$GRAPHIQL" "$REACT" "$REACT" > "$static/VERSIONS"
du -ch "$static"/* | tail -1

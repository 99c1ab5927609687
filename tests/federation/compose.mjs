// Composes the supergraph of the gateway test: node compose.mjs OUT NAME=URL=SDLFILE...
// with @theguild/federation-composition; prints the composition's errors and exits 1 on any.
import { readFileSync, writeFileSync } from "node:fs";
import { parse } from "graphql";
import { composeServices } from "@theguild/federation-composition";

const [out, ...subgraphs] = process.argv.slice(2);
const services = subgraphs.map((arg) => {
  const [name, url, file] = arg.split("=");
  return { name, url, typeDefs: parse(readFileSync(file, "utf8")) };
});
const result = composeServices(services);
if (result.errors?.length) {
  for (const error of result.errors) console.error(error.message);
  process.exit(1);
}
writeFileSync(out, result.supergraphSdl);

// Hive Gateway's configuration for the gateway test: the caller's key goes to every subgraph,
// and demand control reads the subgraphs' @cost and @listSize (reporting its estimate in
// `extensions.cost.estimated`; refusing over the server's own node limit, Limits.max_nodes).
import { defineConfig } from "@graphql-hive/gateway";

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const headers = {};
      for (const name of ["x-api-key", "authorization"]) {
        const value = request.headers.get(name);
        if (value) headers[name] = value;
      }
      return headers;
    },
  },
  demandControl: {
    includeExtensionMetadata: true,
    maxCost: 50000,
  },
  logging: "warn",
});

// Hive Gateway's configuration for the gateway test: the caller's key goes to every subgraph.
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
  logging: "warn",
});

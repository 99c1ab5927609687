// Starts GraphiQL on this server's /graphql: queries and mutations over HTTP, subscriptions
// over graphql-transport-ws on the same path (the Headers tab goes along as the
// connection_init payload, so one X-API-Key serves both). The page's JSON config says what
// the editors start with.
(function () {
  const config = JSON.parse(document.getElementById("sessiongraph-config").textContent);
  const url = new URL(config.endpoint, window.location.href);
  const subscriptionUrl = new URL(url);
  subscriptionUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = GraphiQL.createFetcher({ url: url.toString(), subscriptionUrl: subscriptionUrl.toString() });
  const props = {
    fetcher: fetcher,
    defaultQuery: config.query,
    isHeadersEditorEnabled: true,
    // Keys are not kept in the browser's storage: they would outlive the tab.
    shouldPersistHeaders: false,
    inputValueDeprecation: true,
  };
  if (config.headers) {
    // A demo server: its key (new at every start) in the Headers tab, the tab open.
    props.headers = config.headers;
    props.query = config.query;
    props.defaultEditorToolsVisibility = "headers";
  }
  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(GraphiQL, props));
})();

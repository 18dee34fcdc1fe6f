// Swagger UI for rapport, started from a file (the page allows no inline script).
// "Authorize" keeps the key in this page's memory only (persistAuthorization is off).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});

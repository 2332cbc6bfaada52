// An independent OPC UA server (node-opcua, not asyncua) for interoperability tests:
// Basic256Sha256 SignAndEncrypt only, user edge / password from $UA_PASSWORD, Plant/Tank1/Level rising.
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType } = require("node-opcua-variant");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256";
const SIGN_AND_ENCRYPT = 3;

(async () => {
  const port = parseInt(process.argv[2], 10);
  const pki = process.argv[3];
  const certificateManager = new OPCUACertificateManager({ automaticallyAcceptUnknownCertificate: true, rootFolder: pki });
  await certificateManager.initialize();
  const server = new OPCUAServer({
    port, resourcePath: "/interop", serverCertificateManager: certificateManager,
    securityPolicies: [BASIC256SHA256], securityModes: [SIGN_AND_ENCRYPT],
    allowAnonymous: false,
    userManager: { isValidUser: (user, password) => user === "edge" && password === process.env.UA_PASSWORD },
    serverInfo: { applicationUri: "urn:hacksky:interop:node-opcua", productUri: "interop" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const plant = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Plant" });
  const tank = ns.addObject({ componentOf: plant, browseName: "Tank1" });
  let level = 3.0;
  ns.addVariable({ componentOf: tank, browseName: "Level", nodeId: "s=Plant.Tank1.Level", dataType: "Double",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: level }) } });
  setInterval(() => { level += 0.01; }, 100);
  await server.start();
  console.log("NAMESPACE " + ns.namespaceUri);
  console.log("READY " + server.getEndpointUrl());
  process.on("SIGTERM", async () => { await server.shutdown(100); process.exit(0); });
})();

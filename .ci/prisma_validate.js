// Validate a Prisma schema with Prisma's own parser, the Wasm build of prisma-fmt that the
// Prisma CLI and language server use (@prisma/prisma-schema-wasm).
//
//   node .ci/prisma_validate.js SCHEMA          prints "valid (...)" or Prisma's errors
//   node .ci/prisma_validate.js --dmmf SCHEMA   prints the datamodel as Prisma reads it, as JSON
//
// The package is looked up in $AIHUB_PRISMA_DIR, else ~/.cache/aihub-prisma (.ci/run installs it
// there with `npm install --prefix`). Exit status: 0 valid, 1 invalid (Prisma's errors on
// stderr), 3 the package is not installed (tests skip), 2 bad usage.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");

const args = process.argv.slice(2);
const dmmf = args[0] === "--dmmf";
const schemaPath = dmmf ? args[1] : args[0];
if (!schemaPath) {
  console.error("usage: node prisma_validate.js [--dmmf] SCHEMA");
  process.exit(2);
}
const dir = process.env.AIHUB_PRISMA_DIR || path.join(os.homedir(), ".cache", "aihub-prisma");
const pkgDir = path.join(dir, "node_modules", "@prisma", "prisma-schema-wasm");
let wasm, version;
try {
  wasm = require(pkgDir);
  version = require(path.join(pkgDir, "package.json")).version;
} catch (err) {
  console.error(`@prisma/prisma-schema-wasm is not installed in ${dir}; install it with: ` +
    `npm install --prefix ${dir} @prisma/prisma-schema-wasm`);
  process.exit(3);
}

const text = fs.readFileSync(schemaPath, "utf8");
const params = { prismaSchema: [[schemaPath, text]], noColor: true };
try {
  wasm.validate(JSON.stringify(params));
  if (dmmf) {
    console.log(JSON.stringify(JSON.parse(wasm.get_dmmf(JSON.stringify(params))).datamodel));
    process.exit(0);
  }
} catch (err) {
  let message = String((err && err.message) || err);
  try {
    message = JSON.parse(message).message || message;
  } catch (_) {}
  console.error(message);
  console.log(`invalid (@prisma/prisma-schema-wasm ${version})`);
  process.exit(1);
}
console.log(`valid (@prisma/prisma-schema-wasm ${version})`);

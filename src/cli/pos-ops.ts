import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Envelope, type EnvelopeType, fromBase64url, ProtectedHeader } from "../pki/envelope.js";
import { createRootCa, issueLeaf, ROLES, type Role } from "../pki/issue.js";
import { signEnvelope } from "../pki/sign-envelope.js";
import { errorMessage } from "../shared/errors.js";
import { answerTopLevel, parse, runMain, UsageError } from "./args.js";
import { opsCmd } from "./ops-cmd.js";
import { opsDiag } from "./ops-diag.js";
import { opsRelease } from "./ops-release.js";

const HELP = `pos-ops: operator tools for pos-agent fleets

Usage:
  pos-ops pki init --out DIR [--cn NAME] [--days N]
                                  a new root CA: DIR/ca.key.pem (mode 0600), DIR/ca.cert.pem
  pos-ops pki issue --ca DIR --role release|operator|device --cn NAME --out DIR [--days N]
                                  a leaf key and certificate under the root CA in --ca
  pos-ops release build --component C --version V --from DIR --out OUTDIR [--base MANIFEST] [--url URL]
                                  pack a release tree into an artifact and its unsigned manifest
  pos-ops sign --key KEY --cert CERT [--chain PEM] FILE [--out FILE] [--typ command|manifest]
                                  wrap a command or manifest in a signed envelope, or add a signature
  pos-ops cmd --broker URL --tenant T --target DEVICE|group:G CMD [--args JSON] [--sign KEY,CERT]
              [--wait SEC] [--id ID] [--json]
                                  send one command and print its responses
  pos-ops diag --broker URL --tenant T --target DEV1,DEV2,…|group:G [--wait SEC] [--checks a,b] [--json]
                                  run diagnostics on many terminals; one row per device
  pos-ops --version

Exit codes: 0 success, 1 runtime failure, 2 usage error. Each command answers --help.`;

const COMMAND_HELP = {
  pki: `Usage:
  pos-ops pki init --out DIR [--cn NAME] [--days N]
  pos-ops pki issue --ca DIR --role release|operator|device --cn NAME --out DIR [--days N]

Keys are RSA-3072 and certificates SHA-256, made with node-forge. See pos-ops pki init --help and
pos-ops pki issue --help.`,
  init: `Usage: pos-ops pki init --out DIR [--cn NAME] [--days N]

Creates a self-signed root CA (CA:true, pathlen 1, keyCertSign and cRLSign) in DIR, which is made if
missing: DIR/ca.key.pem (unencrypted PKCS#8, mode 0600: keep it offline) and DIR/ca.cert.pem, the
trust root to configure on terminals. --cn defaults to "pos-agent root CA", --days to 3650.
Never overwrites: if either file exists it stops with exit 1.`,
  issue: `Usage: pos-ops pki issue --ca DIR --role release|operator|device --cn NAME --out DIR [--days N]

Issues a leaf under the root CA in DIR (ca.key.pem, ca.cert.pem made by pos-ops pki init) and writes
OUT/NAME.key.pem (mode 0600) and OUT/NAME.cert.pem. NAME (the certificate's common name) is also the
file name, so it may hold only letters, digits, ".", "_", "@" and "-".
Roles: release signs manifests (codeSigning), operator signs commands (clientAuth), device is a
terminal's MQTT TLS client certificate (clientAuth). --days defaults to 825 and never runs past the CA.
No chain file is written: the leaf is issued by the root directly, and the root is never sent in
x5c (terminals hold it), so pos-ops sign needs only --cert. Never overwrites existing files.`,
  sign: `Usage: pos-ops sign --key KEY --cert CERT [--chain PEM] FILE [--out FILE] [--typ command|manifest]

Wraps the JSON in FILE in a signed envelope (JWS General JSON, CONTRACT.md 7) with the private KEY
and its certificate CERT; --chain adds intermediate certificates (PEM, leaf's issuer first) to x5c.
If FILE already is an envelope, a signature is added to it and its payload is kept byte for byte.
--typ defaults to the existing envelope's type, else "command" when the JSON has a "cmd" key, else
"manifest". The algorithm follows the key: RSA → PS256, EC P-256 → ES256, Ed25519 → EdDSA.
Writes the envelope to --out (replaced atomically; it may be FILE itself) or to stdout.`,
};

const TYPS: Record<string, EnvelopeType> = { command: "pos-command+json", manifest: "pos-manifest+json" };
const CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const answered = answerTopLevel(command, HELP);
  if (answered !== undefined) return answered;
  switch (command) {
    case "pki":
      return pki(rest);
    case "release":
      return opsRelease(rest);
    case "sign":
      return sign(rest);
    case "cmd":
      return opsCmd(rest);
    case "diag":
      return opsDiag(rest);
    default:
      throw new UsageError(`pos-ops: unknown command "${command}"; see pos-ops --help`);
  }
}

function pki(args: string[]): number {
  const [sub, ...rest] = args;
  switch (sub) {
    case undefined:
    case "--help":
    case "-h":
    case "help":
      console.log(COMMAND_HELP.pki);
      return sub === undefined ? 2 : 0;
    case "init":
      return pkiInit(rest);
    case "issue":
      return pkiIssue(rest);
    default:
      throw new UsageError(`pos-ops pki: unknown subcommand "${sub}"; the subcommands are init and issue`);
  }
}

function pkiInit(args: string[]): number {
  const command = "pos-ops pki init";
  const { values, positionals } = parse(
    args,
    { out: { type: "string" }, cn: { type: "string" }, days: { type: "string" } },
    command,
  );
  if (values.help) return help(COMMAND_HELP.init);
  noPositionals(command, positionals);
  const out = required(command, "out", values.out, "DIR");
  const cn = values.cn ?? "pos-agent root CA";
  if (cn.trim().length === 0 || cn.length > 64)
    throw new UsageError(`${command}: --cn must be 1 to 64 characters`);
  const days = parseDays(command, values.days, 3650);
  const keyFile = join(out, "ca.key.pem");
  const certFile = join(out, "ca.cert.pem");
  refuseExisting(command, [keyFile, certFile]);
  const ca = createRootCa({ cn, validityDays: days });
  mkdirSync(out, { recursive: true, mode: 0o700 });
  writeNew(keyFile, ca.keyPem, 0o600);
  writeNew(certFile, ca.certPem, 0o644);
  const cert = new X509Certificate(ca.certPem);
  console.log(
    `${certFile}: root CA "${cert.subject}", valid until ${cert.validTo}; key in ${keyFile} (keep it offline)`,
  );
  return 0;
}

function pkiIssue(args: string[]): number {
  const command = "pos-ops pki issue";
  const { values, positionals } = parse(
    args,
    {
      ca: { type: "string" },
      role: { type: "string" },
      cn: { type: "string" },
      out: { type: "string" },
      days: { type: "string" },
    },
    command,
  );
  if (values.help) return help(COMMAND_HELP.issue);
  noPositionals(command, positionals);
  const caDir = required(command, "ca", values.ca, "DIR");
  const role = required(command, "role", values.role, "release|operator|device");
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new UsageError(`${command}: --role must be release, operator or device, not "${role}"`);
  }
  const cn = required(command, "cn", values.cn, "NAME");
  if (!FILE_NAME.test(cn)) {
    throw new UsageError(
      `${command}: --cn "${cn}" names the output files, so it may hold only letters, digits, ".", "_", "@" and "-" (at most 64)`,
    );
  }
  const out = required(command, "out", values.out, "DIR");
  const days = parseDays(command, values.days, 825);
  const caKeyFile = join(caDir, "ca.key.pem");
  const caCertFile = join(caDir, "ca.cert.pem");
  const ca = {
    keyPem: readText(caKeyFile, "the CA key"),
    certPem: readText(caCertFile, "the CA certificate"),
  };
  const keyFile = join(out, `${cn}.key.pem`);
  const certFile = join(out, `${cn}.cert.pem`);
  refuseExisting(command, [keyFile, certFile]);
  let leaf: ReturnType<typeof issueLeaf>;
  try {
    leaf = issueLeaf({ ca, role: role as Role, cn, validityDays: days });
  } catch (error) {
    throw new Error(`${caDir}: ${errorMessage(error)}`, { cause: error });
  }
  mkdirSync(out, { recursive: true, mode: 0o700 });
  writeNew(keyFile, leaf.keyPem, 0o600);
  writeNew(certFile, leaf.certPem, 0o644);
  const cert = new X509Certificate(leaf.certPem);
  console.log(
    `${certFile}: ${role} certificate "${cert.subject}", valid until ${cert.validTo}; key in ${keyFile}`,
  );
  return 0;
}

function sign(args: string[]): number {
  const command = "pos-ops sign";
  const { values, positionals } = parse(
    args,
    {
      key: { type: "string" },
      cert: { type: "string" },
      chain: { type: "string" },
      out: { type: "string" },
      typ: { type: "string" },
    },
    command,
  );
  if (values.help) return help(COMMAND_HELP.sign);
  const [file, ...extra] = positionals;
  if (file === undefined) throw new UsageError(`${command}: name the JSON FILE to sign`);
  if (extra.length > 0) throw new UsageError(`${command}: unexpected argument "${extra[0]}"`);
  const keyFile = required(command, "key", values.key, "KEY");
  const certFile = required(command, "cert", values.cert, "CERT");
  const typOption = values.typ;
  if (typOption !== undefined && TYPS[typOption] === undefined) {
    throw new UsageError(`${command}: --typ must be command or manifest, not "${typOption}"`);
  }

  const keyPem = readText(keyFile, "the key");
  const certPem = readText(certFile, "the certificate");
  checkKeyAndCert(keyFile, keyPem, certFile, certPem);
  const chainPem = values.chain === undefined ? [] : [readText(values.chain, "the chain")];
  const input = readJson(file);

  let envelope: Envelope;
  try {
    if (isObject(input) && "signatures" in input) {
      const existing = Envelope.safeParse(input);
      if (!existing.success) throw new Error("it has signatures but is not a well-formed envelope");
      const payload = fromBase64url(existing.data.payload);
      if (payload === undefined) throw new Error("the envelope's payload is not base64url");
      const typ = typOption === undefined ? existingTyp(existing.data) : (TYPS[typOption] as EnvelopeType);
      envelope = signEnvelope({
        payload,
        typ,
        keyPem,
        chainPem: [certPem, ...chainPem],
        existing: existing.data,
      });
    } else {
      if (!isObject(input)) throw new Error("it must hold a JSON object (a command or a manifest)");
      const typ = TYPS[typOption ?? ("cmd" in input ? "command" : "manifest")] as EnvelopeType;
      envelope = signEnvelope({ payload: input, typ, keyPem, chainPem: [certPem, ...chainPem] });
    }
  } catch (error) {
    throw new Error(`${file}: ${errorMessage(error)}`, { cause: error });
  }

  warnOnUsage(certFile, certPem, envelope);
  const text = `${JSON.stringify(envelope, null, 2)}\n`;
  if (values.out === undefined) {
    process.stdout.write(text);
  } else {
    // Via a temporary file: --out may be FILE itself, and a half-written envelope helps no one.
    const temporary = `${values.out}.${process.pid}.tmp`;
    writeFileSync(temporary, text);
    renameSync(temporary, values.out);
    console.error(`${values.out}: ${envelope.signatures.length} signature(s)`);
  }
  return 0;
}

function existingTyp(envelope: Envelope): EnvelopeType {
  const first = envelope.signatures[0];
  const bytes = first === undefined ? undefined : fromBase64url(first.protected);
  let typ: unknown;
  try {
    typ = ProtectedHeader.safeParse(JSON.parse(bytes?.toString("utf8") ?? "")).data?.typ;
  } catch {
    typ = undefined;
  }
  const known = Object.values(TYPS).find((candidate) => candidate === typ);
  if (known === undefined)
    throw new Error("the first signature's protected header has no known typ; pass --typ");
  return known;
}

/** Signing is not refused (the envelope may be meant for a test), but terminals would refuse it: say so. */
function warnOnUsage(certFile: string, certPem: string, envelope: Envelope): void {
  const typ = existingTyp(envelope);
  const usages = new X509Certificate(certPem).keyUsage ?? [];
  const needed = typ === "pos-command+json" ? CLIENT_AUTH : CODE_SIGNING;
  const forbidden = typ === "pos-command+json" && usages.includes(CODE_SIGNING);
  if (!usages.includes(needed) || forbidden) {
    const name =
      typ === "pos-command+json"
        ? "an operator certificate (clientAuth, not codeSigning)"
        : "a release certificate (codeSigning)";
    console.error(`warning: ${certFile} is not ${name}; terminals will refuse this signature`);
  }
}

function checkKeyAndCert(keyFile: string, keyPem: string, certFile: string, certPem: string): void {
  let key: ReturnType<typeof createPrivateKey>;
  let cert: X509Certificate;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new Error(`${keyFile}: not an unencrypted PEM private key (${errorMessage(error)})`, {
      cause: error,
    });
  }
  try {
    cert = new X509Certificate(certPem);
  } catch (error) {
    throw new Error(`${certFile}: not a PEM certificate (${errorMessage(error)})`, { cause: error });
  }
  if (!cert.checkPrivateKey(key))
    throw new Error(`${keyFile} is not the key of the certificate in ${certFile}`);
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new Error(
      `${file}: cannot read ${what} (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)})`,
      {
        cause: error,
      },
    );
  }
}

function readJson(file: string): unknown {
  const text = readText(file, "the JSON to sign");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${errorMessage(error)})`, { cause: error });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function required(command: string, option: string, value: string | undefined, placeholder: string): string {
  if (value === undefined || value === "")
    throw new UsageError(`${command}: --${option} ${placeholder} is required`);
  return value;
}

function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`${command}: unexpected argument "${positionals[0]}"`);
}

function parseDays(command: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const days = Number(value);
  if (!/^\d+$/.test(value) || days < 1 || days > 36_500) {
    throw new UsageError(`${command}: --days must be a whole number of days from 1 to 36500, not "${value}"`);
  }
  return days;
}

function refuseExisting(command: string, files: string[]): void {
  const present = files.find((file) => existsSync(file));
  if (present !== undefined)
    throw new Error(`${present} already exists; ${command} never overwrites keys or certificates`);
}

/** Creates a file that must not exist yet ("wx"), so a key is never replaced behind anyone's back. */
function writeNew(file: string, content: string, mode: number): void {
  writeFileSync(file, content, { flag: "wx", mode });
}

function help(text: string): number {
  console.log(text);
  return 0;
}

runMain(() => main(process.argv.slice(2)));

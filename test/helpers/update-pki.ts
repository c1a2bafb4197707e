import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../src/pki/issue.js";

export interface UpdatePki {
  releaseCa: KeyAndCert;
  /** A codeSigning leaf under releaseCa. */
  releaser: KeyAndCert;
  /** A clientAuth leaf under its own operator root. */
  operator: KeyAndCert;
  /** PEM files for the agent's trust.releaseRoots and trust.operatorRoots. */
  releaseRoots: string;
  operatorRoots: string;
}

/**
 * The two roots an updating agent trusts (releases, operators), a signer under each, and the root
 * files under DIR/trust; `extraReleaseRoots` (PEM) are trusted for releases too.
 */
export function makeUpdatePki(dir: string, name: string, extraReleaseRoots = ""): UpdatePki {
  const releaseCa = createRootCa({ cn: `${name} Releases` });
  const operatorCa = createRootCa({ cn: `${name} Operators` });
  const trust = join(dir, "trust");
  mkdirSync(trust, { recursive: true });
  const releaseRoots = join(trust, "releases.pem");
  const operatorRoots = join(trust, "operators.pem");
  writeFileSync(releaseRoots, releaseCa.certPem + extraReleaseRoots);
  writeFileSync(operatorRoots, operatorCa.certPem);
  return {
    releaseCa,
    releaser: issueLeaf({ ca: releaseCa, role: "release", cn: "release-bot" }),
    operator: issueLeaf({ ca: operatorCa, role: "operator", cn: "alice" }),
    releaseRoots,
    operatorRoots,
  };
}

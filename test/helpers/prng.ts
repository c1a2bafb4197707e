export { prng } from "../../scripts/lib/prng.mjs";

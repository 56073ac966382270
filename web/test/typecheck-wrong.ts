// Must NOT type-check (web/test/types.test.mjs): an amount is a string, never a number.
import { PreparedPlan } from '../pkg/ratecard_wasm.js';
import type { Plan } from '../pkg/ratecard_wasm.js';

export function wrong(plan: Plan): number {
  const total: number = new PreparedPlan(plan).quote({ quantities: {} }).total;
  return total;
}

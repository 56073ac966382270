/* tslint:disable */
/* eslint-disable */

import type { Plan, Usage, Invoice } from "./ratecard_types";
export type { Plan, Usage, Invoice };
/** Metric code → quantity as a decimal string ("2350000", "12.5"). */
export type Quantities = Record<string, string>;
/** One problem of a document or plan, at its JSON path. */
export interface Problem { severity: "error" | "warning"; code: string; path: string; message: string; }
export interface Report { errors: Problem[]; warnings: Problem[]; }
export interface CurvePoint { quantity: string; total: string; }
export interface BreakEven { quantity: string; cheaper_below: string; cheaper_above: string; }
export interface RankedPlan { plan_id: string; name: string; currency: string; total: string; }
/** What the binding throws: an `Error` with the engine's message, a code and the JSON path. */
export interface ErrorReport { code: string; document?: string; path?: string; issues?: { code: string; path: string }[]; message: string; }
export interface RatecardError extends Error { code: string; path: string | null; document?: string; issues?: { code: string; path: string }[]; report?: ErrorReport; }



/**
 * A plan validated once and quoted many times (a pricing page re-quoting on every slider move).
 */
export class PreparedPlan {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Where the cost of `metric` may bend or jump (tier, band and allowance boundaries).
     */
    breakpoints(metric: string): string[];
    /**
     * Total per metric quantity, from `from` to `to` at round steps and every breakpoint.
     */
    costCurve(metric: string, from: any, to: any, samples: number, base: any): CurvePoint[];
    /**
     * The largest quantity of `metric` within `budget` (a string), or `null`.
     */
    maxUsageForBudget(metric: string, budget: any, base: any, max: any): string | undefined;
    /**
     * Parses and validates `plan` (JSON text or an object); an invalid plan throws with every issue.
     */
    constructor(plan: any);
    /**
     * The invoice preview as the engine's JSON text (byte-identical to the native engine's).
     */
    quoteJson(usage: any): string;
    /**
     * The invoice preview for `usage` (JSON text or an object), as an object.
     */
    quote(usage: any): Invoice;
    /**
     * The total of a typical full period at `quantities` (`{metric: "decimal"}`), a string.
     */
    total(quantities: any): string;
    /**
     * The plan as an object (as the engine reads it).
     */
    readonly plan: Plan;
    /**
     * Lint warnings of the plan: `[{severity, code, path, message}]`.
     */
    readonly warnings: Problem[];
}

/**
 * The first usage of `metric` in `[from, to]` at which the cheaper plan changes:
 * `{quantity, cheaper_below, cheaper_above}` or `null`.
 */
export function breakEven(plan: Plan | string, other: Plan | string, metric: string, from: string, to: string, base: Quantities | undefined): BreakEven | null;

/**
 * See [`JsPreparedPlan::breakpoints`] (the plan is only parsed, not validated).
 */
export function breakpoints(plan: Plan | string, metric: string): string[];

/**
 * Plans (an array of JSON texts or objects) ranked by total at `quantities`, cheapest first:
 * `[{plan_id, name, currency, total}]`.
 */
export function cheapestPlan(plans: Array<Plan | string>, quantities: Quantities): RankedPlan[];

/**
 * See [`JsPreparedPlan::cost_curve`].
 */
export function costCurve(plan: Plan | string, metric: string, from: string, to: string, samples: number, base: Quantities | undefined): CurvePoint[];

/**
 * The version of the engine compiled into this package.
 */
export function engineVersion(): string;

/**
 * See [`JsPreparedPlan::max_usage_for_budget`].
 */
export function maxUsageForBudget(plan: Plan | string, metric: string, budget: string, base: Quantities | undefined, max: string | undefined): string | undefined;

/**
 * The invoice preview of `plan` for `usage` (JSON text or objects), as an object.
 */
export function quote(plan: Plan | string, usage: Usage | string): Invoice;

/**
 * The invoice preview as the engine's JSON text (byte-identical to the native engine's).
 */
export function quoteJson(plan: Plan | string, usage: Usage | string): string;

/**
 * The IANA timezones this build knows (the browser build keeps a chosen set; see `docs/web.md`).
 */
export function timezones(): string[];

/**
 * The total of a typical full period of `plan` at `quantities`, a decimal string.
 */
export function total(plan: Plan | string, quantities: Quantities): string;

/**
 * Every error (JSON and plan) with its path, and lint warnings: `{errors, warnings}`. Never throws
 * for a bad plan: the report is the answer.
 */
export function validate(plan: Plan | string): Report;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_preparedplan_free: (a: number, b: number) => void;
    readonly breakEven: (a: any, b: any, c: number, d: number, e: any, f: any, g: any) => [number, number, number];
    readonly breakpoints: (a: any, b: number, c: number) => [number, number, number, number];
    readonly cheapestPlan: (a: any, b: any) => [number, number, number];
    readonly costCurve: (a: any, b: number, c: number, d: any, e: any, f: number, g: any) => [number, number, number];
    readonly engineVersion: () => [number, number];
    readonly maxUsageForBudget: (a: any, b: number, c: number, d: any, e: any, f: any) => [number, number, number, number];
    readonly preparedplan_breakpoints: (a: number, b: number, c: number) => [number, number];
    readonly preparedplan_costCurve: (a: number, b: number, c: number, d: any, e: any, f: number, g: any) => [number, number, number];
    readonly preparedplan_maxUsageForBudget: (a: number, b: number, c: number, d: any, e: any, f: any) => [number, number, number, number];
    readonly preparedplan_new: (a: any) => [number, number, number];
    readonly preparedplan_plan: (a: number) => [number, number, number];
    readonly preparedplan_quote: (a: number, b: any) => [number, number, number];
    readonly preparedplan_quoteJson: (a: number, b: any) => [number, number, number, number];
    readonly preparedplan_total: (a: number, b: any) => [number, number, number, number];
    readonly preparedplan_warnings: (a: number) => [number, number, number];
    readonly quote: (a: any, b: any) => [number, number, number];
    readonly quoteJson: (a: any, b: any) => [number, number, number, number];
    readonly timezones: () => [number, number];
    readonly total: (a: any, b: any) => [number, number, number, number];
    readonly validate: (a: any) => [number, number, number];
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __externref_drop_slice: (a: number, b: number) => void;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;

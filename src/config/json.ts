/**
 * A JSON parser for untrusted configuration. JSON.parse would do the grammar, but not the
 * rest: it recurses (deep nesting overflows the stack), its errors quote the source across
 * lines without a position, and its objects have a prototype. This one is iterative, bounded
 * in depth, reports "line L, column C", and builds objects without a prototype, so no key
 * (`__proto__`, `constructor`) means anything but data. Time is linear in the input.
 */

/** Nesting deeper than this is refused: a configuration needs about 5 levels. */
export const MAX_JSON_DEPTH = 64;

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export class JsonSyntaxError extends Error {}

const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

interface Frame {
  container: JsonValue[] | JsonObject;
  /** The key awaiting its value, for objects. */
  key?: string;
}

function position(text: string, index: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < index && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return `line ${line}, column ${index - lineStart + 1}`;
}

function describeAt(text: string, index: number): string {
  if (index >= text.length) return 'unexpected end of input';
  const ch = text[index]!;
  return `unexpected ${JSON.stringify(ch)}`;
}

/** Parses JSON text into plain data; throws JsonSyntaxError with a one-line message. */
export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): JsonValue {
  let i = 0;
  const fail = (what: string, at = i): never => {
    throw new JsonSyntaxError(`${what} at ${position(text, at)}`);
  };
  const skip = () => {
    WHITESPACE.lastIndex = i;
    WHITESPACE.exec(text);
    i = WHITESPACE.lastIndex;
  };
  const readString = (): string => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) fail(text[i] === '"' ? 'unterminated string or invalid escape' : describeAt(text, i));
    i = STRING.lastIndex;
    return JSON.parse(m![0]) as string;
  };

  const stack: Frame[] = [];
  let root: JsonValue | undefined;

  /** Places a finished value into the container on top of the stack (or as the root). */
  const place = (value: JsonValue) => {
    const top = stack[stack.length - 1];
    if (!top) {
      root = value;
    } else if (Array.isArray(top.container)) {
      top.container.push(value);
    } else {
      // The object has no prototype, so even "__proto__" is an ordinary own key here.
      (top.container as JsonObject)[top.key!] = value;
    }
  };

  /** Reads one value start; containers are pushed and filled by the loop below. */
  const readValue = () => {
    skip();
    const ch = text[i];
    if (ch === '{' || ch === '[') {
      if (stack.length >= maxDepth) fail(`nesting deeper than ${maxDepth} levels`);
      const container: JsonValue[] | JsonObject = ch === '[' ? [] : (Object.create(null) as JsonObject);
      place(container);
      stack.push({ container });
      i++;
      skip();
      const close = ch === '[' ? ']' : '}';
      if (text[i] === close) {
        i++;
        stack.pop();
        return;
      }
      if (ch === '{') readKey();
      else readValue();
      return;
    }
    if (ch === '"') return place(readString());
    if (ch === 't' && text.startsWith('true', i)) return (i += 4), place(true);
    if (ch === 'f' && text.startsWith('false', i)) return (i += 5), place(false);
    if (ch === 'n' && text.startsWith('null', i)) return (i += 4), place(null);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m || m[0] === '' || m[0] === '-') fail(describeAt(text, i));
    i = NUMBER.lastIndex;
    return place(Number(m![0]));
  };
  const readKey = () => {
    skip();
    if (text[i] !== '"') fail(`${describeAt(text, i)}, expected a key in double quotes`);
    const key = readString();
    const top = stack[stack.length - 1]!;
    if (Object.prototype.hasOwnProperty.call(top.container, key)) fail(`duplicate key ${JSON.stringify(key.slice(0, 40))}`);
    skip();
    if (text[i] !== ':') fail(`${describeAt(text, i)}, expected ":" after a key`);
    i++;
    top.key = key;
    readValue();
  };

  readValue();
  // Each turn finishes one element of the innermost open container.
  while (stack.length > 0) {
    skip();
    const top = stack[stack.length - 1]!;
    const isArray = Array.isArray(top.container);
    const ch = text[i];
    if (ch === ',') {
      i++;
      if (isArray) readValue();
      else readKey();
    } else if (ch === (isArray ? ']' : '}')) {
      i++;
      stack.pop();
    } else {
      fail(`${describeAt(text, i)}, expected "," or "${isArray ? ']' : '}'}"`);
    }
  }
  skip();
  if (i < text.length) fail(`${describeAt(text, i)} after the end of the JSON value`);
  return root as JsonValue;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

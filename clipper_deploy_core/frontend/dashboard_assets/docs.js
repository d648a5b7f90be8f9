// The try-it page: one form per JSON operation of /openapi.json; the reply is shown as it came.
"use strict";

function example(schema, spec) {
  if (!schema) return {};
  if (schema.$ref) return example(spec.components.schemas[schema.$ref.split("/").pop()], spec);
  if (schema.oneOf) return example(schema.oneOf[0], spec);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === "object") {
    const out = {};
    for (const key of schema.required || []) out[key] = example((schema.properties || {})[key], spec);
    return out;
  }
  if (type === "array") return [example(schema.items, spec), example(schema.items, spec)];
  if (type === "integer") return 1;
  if (type === "number") return 1.5;
  if (type === "string") return schema.contentEncoding === "base64" ? "aGVsbG8=" : "hello";
  return null;
}

async function send(method, path, body, out) {
  out.textContent = "sending...";
  const reply = await fetch(path, { method, headers: { "Content-Type": "application/json" }, body });
  const text = await reply.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* text/plain */ }
  out.textContent = reply.status + " " + reply.statusText + "\n" + shown;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  const root = document.getElementById("operations");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const section = document.createElement("section");
      section.dataset.operation = method.toUpperCase() + " " + path;
      const title = document.createElement("h2");
      title.innerHTML = "<code></code> ";
      title.firstChild.textContent = method.toUpperCase() + " " + path;
      title.append(op.summary || "");
      section.append(title);
      const json = op.requestBody && op.requestBody.content["application/json"];
      const usable = !path.includes("{");
      const body = document.createElement("textarea");
      if (json) body.value = JSON.stringify(example(json.schema, spec));
      const button = document.createElement("button");
      button.textContent = "Send";
      const out = document.createElement("pre");
      out.className = "reply";
      button.disabled = !usable;
      button.addEventListener("click", () => send(method.toUpperCase(), path, json ? body.value : undefined, out));
      if (json) section.append(body);
      section.append(button, out);
      root.append(section);
    }
  }
}
main();

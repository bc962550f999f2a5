// eslint for the dashboard's script: the recommended rules, browser globals, a module-less
// script in strict mode.
import js from "@eslint/js";

export default [
  js.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: {
        console: "readonly",
        document: "readonly",
        location: "readonly",
        sessionStorage: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        fetch: "readonly",
        DOMParser: "readonly",
        URLSearchParams: "readonly",
      },
    },
    rules: {
      strict: ["error", "global"],
      "no-implicit-globals": "error",
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
    },
  },
];

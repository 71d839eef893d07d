import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      // One way to keep a member private: JavaScript's own #names (a private constructor stays TypeScript's).
      'no-restricted-syntax': [
        'error',
        { selector: "PropertyDefinition[accessibility='private']", message: 'Use a #private field instead of `private`.' },
        {
          selector: "MethodDefinition[accessibility='private'][kind!='constructor']",
          message: 'Use a #private method instead of `private`.',
        },
        {
          selector: "TSParameterProperty[accessibility='private']",
          message: 'Declare a #private field and assign it instead of a `private` parameter property.',
        },
      ],
    },
  },
  // Formatting is prettier's (npm run format); eslint only judges the code.
  prettier,
);

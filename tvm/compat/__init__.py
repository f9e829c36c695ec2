"""Compatible APIs: Piston v2, Judge0 CE."""

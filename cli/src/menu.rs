//! The interactive menu, with the options of the CAMB launcher's CLI (and a
//! seventh: a run's certificate). Plain lines in, plain lines out: it works
//! the same with piped input, and ends cleanly at end of input.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::args::{BuildArgs, RunArgs};
use crate::commands::{Ctx, build, cert, programs, run};
use crate::error::Result;

const OPTIONS: &str = "\
1. List files
2. Upload a file
3. Delete a program
4. Compile a program
5. Execute a program
6. Exit
7. View a run's certificate";

/// Runs the menu until `6`, or the end of `input`.
pub fn run(ctx: &mut Ctx, mut input: impl BufRead) -> Result<u8> {
    // The menu is for people; `--json` does not apply.
    ctx.json = false;
    println!("Attestable launcher");
    loop {
        println!("\n{OPTIONS}");
        let Some(choice) = prompt(&mut input, "Choose an option (1-7): ") else {
            return Ok(0);
        };
        let outcome = match choice.as_str() {
            "1" => programs::list(ctx),
            "2" => {
                let Some(path) = prompt_nonempty(&mut input, "Path of the C file to upload: ")
                else {
                    return Ok(0);
                };
                programs::upload(ctx, Path::new(&path))
            }
            "3" => {
                let Some(id) = prompt_id(&mut input, "Program id to delete: ") else {
                    return Ok(0);
                };
                programs::delete(ctx, id)
            }
            "4" => {
                let Some(id) = prompt_id(&mut input, "Program id to compile: ") else {
                    return Ok(0);
                };
                build::build(
                    ctx,
                    &BuildArgs {
                        program_id: id,
                        profile: None,
                        services_anchor: None,
                    },
                )
            }
            "5" => {
                let Some(id) = prompt_id(&mut input, "Program id to execute: ") else {
                    return Ok(0);
                };
                execute(ctx, id)
            }
            "6" => {
                println!("Goodbye.");
                return Ok(0);
            }
            "7" => {
                let Some(id) = prompt_id(&mut input, "Run id: ") else {
                    return Ok(0);
                };
                cert::show(ctx, Some(id), None, false)
            }
            other => {
                println!("Invalid option {other:?}: enter a number from 1 to 7.");
                continue;
            }
        };
        if let Err(err) = outcome {
            eprintln!("Error: {err}");
        }
    }
}

fn execute(ctx: &mut Ctx, id: i64) -> Result<u8> {
    let status = run::run(
        ctx,
        RunArgs {
            program_id: id,
            build: None,
            args: Vec::new(),
            time_limit: None,
            detach: false,
            rest: Vec::new(),
        },
    )?;
    println!("Exit status: {status}");
    Ok(status)
}

/// Prints `text` and reads one line; `None` at the end of input.
fn prompt(input: &mut impl BufRead, text: &str) -> Option<String> {
    print!("{text}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => {
            println!();
            None
        }
        Ok(_) => Some(line.trim().to_owned()),
    }
}

fn prompt_nonempty(input: &mut impl BufRead, text: &str) -> Option<String> {
    loop {
        let answer = prompt(input, text)?;
        if !answer.is_empty() {
            return Some(answer);
        }
        println!("Nothing entered; try again.");
    }
}

/// Asks until a positive whole number is given.
fn prompt_id(input: &mut impl BufRead, text: &str) -> Option<i64> {
    loop {
        let answer = prompt(input, text)?;
        match answer.parse::<i64>() {
            Ok(id) if id > 0 => return Some(id),
            _ => println!("Invalid id {answer:?}: enter a positive whole number."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_asked_again_until_valid() {
        let mut input = "x\n-1\n\n12\n".as_bytes();
        assert_eq!(prompt_id(&mut input, "id: "), Some(12));
        let mut input = "x\n".as_bytes();
        assert_eq!(prompt_id(&mut input, "id: "), None);
    }

    #[test]
    fn exit_and_end_of_input_end_the_menu_without_a_launcher() {
        let mut ctx = Ctx::new(Default::default(), true);
        assert_eq!(run(&mut ctx, "9\nhello\n6\n".as_bytes()).unwrap(), 0);
        assert!(!ctx.json);
        assert_eq!(run(&mut ctx, "".as_bytes()).unwrap(), 0);
        assert_eq!(run(&mut ctx, "3\n".as_bytes()).unwrap(), 0);
    }
}

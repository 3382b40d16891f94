//! `jasper contacts`: names for the public keys a person talks to.

use super::{ContactsAction, ContactsArgs};
use crate::client::contacts::Contacts;
use crate::client::{ClientDb, Contact};
use crate::config::Config;

fn print(contact: &Contact, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(contact).expect("contact serializes")
        );
    } else {
        // The short form (PROTOCOL.md §1) that `jasper id` shows its owner.
        let short = crate::proto::PublicKey::parse(&contact.public_key, 2048)
            .map_or_else(|_| contact.fingerprint.clone(), |k| k.fingerprint().short());
        let avatar = contact
            .avatar
            .as_ref()
            .map(|p| format!("  avatar {}", p.display()))
            .unwrap_or_default();
        println!("{:<24} {}{avatar}", contact.name, short);
    }
}

/// Runs a contacts subcommand.
pub fn run(config: &Config, args: ContactsArgs) -> anyhow::Result<()> {
    let db = ClientDb::open(&config.client.data_dir)?;
    let contacts = Contacts::new(&db, &config.client.data_dir);
    match args.action {
        ContactsAction::Add { name, key, avatar } => {
            let c = contacts.add(&name, &key, avatar.as_deref())?;
            print(&c, args.json);
        }
        ContactsAction::List => {
            let list = contacts.list()?;
            if list.is_empty() && !args.json {
                println!("no contacts yet; add one with `jasper contacts add NAME KEY`");
            }
            for c in &list {
                print(c, args.json);
            }
        }
        ContactsAction::Show { name } => {
            let c = contacts.get(&name)?;
            if args.json {
                print(&c, true);
            } else {
                println!("name        {}", c.name);
                println!("fingerprint {}", c.fingerprint);
                println!("public key  {}", c.public_key);
                if let Some(a) = &c.avatar {
                    println!("avatar      {}", a.display());
                }
            }
        }
        ContactsAction::Rename { name, new_name } => {
            let c = contacts.rename(&name, &new_name)?;
            print(&c, args.json);
        }
        ContactsAction::Avatar { name, path } => {
            let c = contacts.set_avatar(&name, &path)?;
            print(&c, args.json);
        }
        ContactsAction::Rm { name } => {
            let c = contacts.remove(&name)?;
            if args.json {
                print(&c, true);
            } else {
                println!("removed {}", c.name);
            }
        }
    }
    Ok(())
}
